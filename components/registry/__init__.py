"""Model registry: the MLflow pyfunc of the MoSA pipeline, registration with lineage, and the
promotion gate that moves the ``champion`` alias (with rollback and copy to a production model).

This package re-exports nothing: import from its modules."""
