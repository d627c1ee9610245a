"""Data: each data set loaded from its file or library (`loaders`), checked
(`checks`), split, with the train statistics that standardize its inputs
inside every model (`datasets`), and the output heads its targets need (`heads`).

May import: sweeplab.errors.
"""
