"""The Python face of csrc/: fake (meta) implementations and thin wrappers around torch.ops.n2n_fast.

Modules here are imported by n2n_fast._ext only after the extension loaded, so their fake registrations always
find the op they describe.
"""
