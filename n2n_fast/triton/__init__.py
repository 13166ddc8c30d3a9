"""Triton kernels. Importing this package requires triton; n2n_fast._backend imports it lazily."""
