"""`python -m siamese.space`: the command that pushes the demo to a Hugging Face Space (see `siamese.hub.space`)."""

from siamese.hub.space import main

if __name__ == "__main__":
    main()
