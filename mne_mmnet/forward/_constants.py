"""Facts of the template head model (a leaf module: imports nothing)."""

N_REGIONS_PER_HEMI = 497
N_REGIONS = 2 * N_REGIONS_PER_HEMI
PARCELLATION_SEED = 0
CONDUCTIVITY = (0.3, 0.006, 0.3)
MONTAGE = "colin27_1020"
# The 94 names of MNE's 10-20 montage minus the old aliases T3, T4, T5, T6 (same
# positions as T7, T8, P7, P8), in the montage's order.
TEMPLATE_CH_NAMES = (
    "Fp1", "Fpz", "Fp2", "AF9", "AF7", "AF5", "AF3", "AF1", "AFz", "AF2", "AF4",
    "AF6", "AF8", "AF10", "F9", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6",
    "F8", "F10", "FT9", "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6",
    "FT8", "FT10", "T9", "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8",
    "T10", "TP9", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8",
    "TP10", "P9", "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8", "P10",
    "PO9", "PO7", "PO5", "PO3", "PO1", "POz", "PO2", "PO4", "PO6", "PO8", "PO10",
    "O1", "Oz", "O2", "O9", "Iz", "O10", "M1", "M2", "A1", "A2",
)  # fmt: skip
