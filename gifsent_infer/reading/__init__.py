"""Reading inputs: paths, URLs and stdin into bytes (inputs, netpolicy), bytes into sampled frames
(gifio for GIF, media for the other formats), and the memory budget decoding runs under.

Imports only the package's base modules (errors, files, paths, contract, options).
"""
