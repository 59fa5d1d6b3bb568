"""`python -m gifsent_infer.cli ...` runs `gifsent-infer ...`."""

from gifsent_infer.cli import main

main()
