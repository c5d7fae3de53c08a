"""Training of the built-in engines' weights on JaQuAD."""
