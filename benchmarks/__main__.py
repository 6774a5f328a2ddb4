"""``python -m benchmarks [--quick]``: every registered method against its floor, and the peers (guard.py)."""

from .guard import main

if __name__ == "__main__":
    main()
