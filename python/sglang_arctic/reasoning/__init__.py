"""Dynasor: probe-in-the-middle early exit and Certaindex. While a request
reasons, the server periodically appends a short probe that asks the model for
its current boxed answer; when the last few probed answers agree (and the probes
show no hesitation) the reasoning is certain enough to stop early. ``answers``
reads and compares probed answers, ``certainty`` turns a probe history into the
stop decision and the Certaindex score, ``settings`` holds per-request knobs.
"""
