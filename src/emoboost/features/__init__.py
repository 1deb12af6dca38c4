"""Features: acoustic (MFCC, spectrogram, log-mel, functionals), the content-addressed cache, routing."""
