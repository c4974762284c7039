"""Evaluation on embeddings: retrieval and verification figures, thresholds chosen on validation, t-SNE maps."""
