"""Digital separation baseline: a source coder (BPG, HEVC-intra via pillow-heif, JPEG2000), 5G LDPC and QAM
from Sionna, the best-MCS envelope and the capacity bound (ARCHITECTURE.md section 5.3).

Modules: ``mcs`` (MCS table and names), ``source`` (source coders, rate matching), ``link`` (code blocks,
CRC, LDPC, scrambling, QAM), ``codecs`` (the codecs the engine runs and their factories).
"""
