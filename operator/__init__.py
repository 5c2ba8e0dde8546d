"""The kubebots operator: reconciles ``Bot`` custom resources into the config store.

Imported as ``kubebots.operator`` (never as a top-level ``operator``). It reaches the runtime only
through the shared schema (``kubebots.runtime.schema``) and, later, the store protocol.
"""
