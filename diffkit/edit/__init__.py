"""Image editing with diffusion models (issue 15, in progress): views with exact inverses,
filters that sum to the identity, network combinators (visual anagrams, hybrids,
factorized diffusion) and the editing loops (forward noise, one-step x0, SDEdit,
inpainting). Every piece is a pure function over a pipeline's model; the CLI comes later."""
