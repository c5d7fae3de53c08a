"""The bundled demo: 47 prefecture articles, questions and conversations about them, and
a Serve config."""

from pathlib import Path

DEMO_DIR = Path(__file__).parent
DEMO_CORPUS = DEMO_DIR / "prefectures.jsonl"
DEMO_QUESTIONS = DEMO_DIR / "questions.jsonl"
DEMO_CONFIG = DEMO_DIR / "demo_config.yaml"
DEMO_CONVERSATIONS = DEMO_DIR / "conversations.jsonl"
