"""Publishing: a saved model folder or the demo Space, uploaded to the Hugging Face Hub."""
