"""The simulated distribution network: one domain model, driven by a virtual clock into files.

``generate`` fast-forwards days of traffic into OTLP JSON lines, access logs, CloudEvents and a
ground truth; ``flow`` holds the business behaviour both drivers share.
"""
