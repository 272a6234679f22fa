"""The one Label Studio client (label-studio-sdk 2.x and its REST API), with its one error type."""
