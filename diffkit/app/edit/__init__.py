"""The ``diffkit edit`` operations as typed request -> result functions.

:mod:`~diffkit.app.edit.requests` holds the requests and results (it imports nothing
heavy, so the CLI can read its defaults at start-up); the functions live by kind:
:mod:`~diffkit.app.edit.compose` (anagram, hybrid, factorize: one image under several
prompts), :mod:`~diffkit.app.edit.images` (sdedit, inpaint, noise, denoise: one input
image) and :mod:`~diffkit.app.edit.prompting` (sample, embed). Each op writes an edit
folder (:mod:`~diffkit.app.edit.publish`) and returns an
:class:`~diffkit.app.edit.requests.EditResult`.
"""
