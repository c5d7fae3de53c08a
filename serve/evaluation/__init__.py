"""Quality of retrieval and answers, measured on SQuAD-format questions."""
