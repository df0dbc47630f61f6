"""The step state's layout, declared once: Python (`backends/base.py`), numba and CUDA all index it by these names.

The step state is one float64 vector on the backend. Slots STEP_COST..STEP_EXAMPLES describe the step in
progress (a gradient reducer sums them across workers); TOTAL_COST..TOTAL_EXAMPLES sum them over the finite
steps since the host last read the state, in the same order, so that one slice adds into the other.
Each slot is one line below; `SLOTS`, `STATE_SIZE` and the CUDA sources' #defines (`kernels/cupy_common.py`)
are derived from those lines. Numba reads the module-level ints as compile-time constants: naming a slot
costs a compiled kernel nothing. Nothing here imports anything, so every layer can import it.
"""

STEP_COST = 0  # Σ over the step's examples of their cost, plus (λ/2)·Σ‖W‖² with L2: the mean cost × m
STEP_CORRECT = 1  # examples the step's forward pass classified correctly (before its update)
STEP_EXAMPLES = 2  # the step's example count m
NONFINITE = 3  # 1 once a cost or gradient was not finite; sticky: no update runs until the host resets it
TOTAL_COST = 4  # Σ STEP_COST over the finite steps
TOTAL_CORRECT = 5  # Σ STEP_CORRECT over the finite steps
TOTAL_EXAMPLES = 6  # Σ STEP_EXAMPLES over the finite steps
FINITE_STEPS = 7  # the finite steps taken

#: Every slot's index by name, in slot order: the integer constants above, read back so they are written once.
SLOTS = dict(sorted(((name, value) for name, value in globals().items() if name.isupper()), key=lambda item: item[1]))
#: The length of the step-state vector.
STATE_SIZE = len(SLOTS)
#: How many slots describe one step (STEP_COST..STEP_EXAMPLES), each summed into its TOTAL_ slot by `commit_step`.
STEP_SLOTS = STEP_EXAMPLES + 1 - STEP_COST
