"""Builders the tests share (tiny random-weight models and pipelines); not shipped in components/."""
