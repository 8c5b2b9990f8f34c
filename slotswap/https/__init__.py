"""Certificates: the files an inventory names, read and checked on the operator's machine;
issuance from an ACME CA; installing a certificate on a server where HAProxy serves it.
Imports: `core`, `config`, `commands`, `remote`.
"""
