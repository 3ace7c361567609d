"""The rates wav2vec 2.0 works at: 16 kHz mono audio in, one frame out per 320 samples (20 ms).

A foundation module (no torch) so that light commands such as `xlsr data stats` can use them too.
"""

SAMPLE_RATE = 16000  # Hz; every waveform the model sees, and every manifest's num_samples, is at this rate
# The standard CNN's strides (5, 2, 2, 2, 2, 2, 2) multiply to 320: one frame every 20 ms, its receptive field 25 ms.
FRAME_STRIDE_SAMPLES = 320
RECEPTIVE_FIELD_SAMPLES = 400  # the samples one frame hears: audio shorter than this gives no frame
FRAME_STRIDE_S = FRAME_STRIDE_SAMPLES / SAMPLE_RATE  # 0.02 s
