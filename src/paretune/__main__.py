"""`python -m paretune ...` is the same as the `paretune` command."""
from paretune.cli import main

if __name__ == "__main__":  # model processes ("spawn") import this module again: run nothing then
    main()
