"""Speculative decoding: drafters and their engine-agnostic cores.

``suffix_tree`` is SuffixDecoding's draft source (per-request and global
suffix trees over token ids); it never imports SGLang.
"""
