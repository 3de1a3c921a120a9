"""Model families behind one adapter protocol (see base.py) and an explicit registry."""
