"""``python -m edge classify|bench|camera`` (see :mod:`edge.cli`)."""

from edge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
