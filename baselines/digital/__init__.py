"""Digital separation baseline: a source coder (BPG, HEVC-intra via pillow-heif, JPEG2000), 5G LDPC and QAM
from Sionna, the genie best-MCS envelope, link adaptation from the told SNR and the capacity bound
(ARCHITECTURE.md section 5.3).

Modules: ``mcs`` (MCS table and names), ``source`` (source coders, rate matching), ``link`` (code blocks,
CRC, LDPC, scrambling, QAM), ``bler`` (Monte Carlo code block error rate of the link over AWGN), ``adaptation``
(measured MCS thresholds, ``mcs_thresholds.json``, and the MCS decision rule), ``codecs`` (the codecs the engine
runs and their factories).
"""
