"""Typed, validated configuration (params.yaml sections)."""

from components.config.loader import ConfigError, load_params, load_section, validate_section
from components.config.schema import IngestParams

__all__ = ["ConfigError", "IngestParams", "load_params", "load_section", "validate_section"]
