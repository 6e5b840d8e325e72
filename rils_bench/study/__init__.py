"""The comparison study: pre-train every method at one budget, evaluate every checkpoint and the floors, build tables.

`plan` reads a study config into runs and settings; `stages` does the work, skipping what is already recorded.
"""
