"""Pure cores every layer uses: the I/O contract, typed records, errors and exit codes, .npz files, aligned
buffers.
"""
