"""`python -m paretune ...` is the same as the `paretune` command."""
from paretune.cli import main

main()
