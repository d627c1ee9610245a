"""Data: each data set loaded from its file or library (`loaders`), checked
(`checks`), split and standardized (`datasets`), and the output heads its
targets need (`heads`).

May import: sweeplab.errors.
"""
