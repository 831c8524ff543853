"""Reading, checking, splitting, tokenizing and batching user data."""
