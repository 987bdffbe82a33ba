"""Every file in and out: inputs resolved to what an upstream takes (paths, URLs, data: URIs,
uploads, earlier outputs), outputs saved (a folder or a bucket), callers' uploads, and the
files:// and jobs:// references; C2PA Content Credentials written into saved audio.

Entry points: `inputs.InputResolver`, `outputs.OutputSaver` (via `s3.open_saver`),
`uploads.open_uploads`, `references.referenced_output`.
"""

__all__ = ["fetch", "guarded", "inputs", "marking", "outputs", "provenance", "references", "s3", "uploads"]
