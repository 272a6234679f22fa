"""Redis state shared by every process: the project registry and demonstrations, the prediction cache, size bounds."""
