"""Galleries: labelled embeddings, ranked matches, and the saved index that searches millions."""
