"""Typed, validated configuration (params.yaml sections). ``components.config.schema`` indexes every
section model; the loader imports only the section it is asked for."""

from components.config.loader import ConfigError, load_params, load_section, section_model, validate_section

__all__ = ["ConfigError", "load_params", "load_section", "section_model", "validate_section"]
