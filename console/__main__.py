"""`python -m console ARGS` runs the `modeldeck` command, as its installed entry point does."""

from console.quick import main

main()
