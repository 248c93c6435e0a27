"""The params.yaml sections, one module per stage (see ``components.config.schema``)."""
