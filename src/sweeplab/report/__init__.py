"""Reports read back from MLflow: leaderboards, the comparison of trials by
one param, report figures, and the command (`cli`: `python -m sweeplab.report`).

May import: sweeplab.errors, sweeplab.tracking.
"""
