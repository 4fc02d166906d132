"""Image editing with diffusion models: views with exact inverses, filters that sum to the
identity, network combinators (visual anagrams, hybrids, factorized diffusion) and the
editing loops (forward noise, one-step x0, SDEdit, inpainting, RePaint). Every piece is a
pure function over a pipeline's model; ``diffkit edit`` (cli/edit.py) is their command line."""
