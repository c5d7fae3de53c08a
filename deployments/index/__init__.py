"""The index as an artefact shared by every stage: its format, versions and passages."""
