#!/usr/bin/env bash
# Build flash-attn 2.8.3.post2 from its sdist on a GPU machine without internet, trimmed so it
# compiles in minutes instead of hours: this GPU's architecture only, bf16 only, head dims 32, 64
# and 128 (every head dim <= 128 rounds up to one of them), and no ALIBI / softcap / sliding-window
# variants (flash-attn's own FLASHATTENTION_DISABLE_* switches). Dropout, causal and uneven head
# dims stay. A call outside the build (fp16, head dim > 128) fails with a clear message instead of
# an undefined symbol. Installs into /tmp/site.
#   bash build-flash.sh DIR      (DIR holds sdist/flash_attn-*.tar.gz)
# MAX_JOBS (default: nproc) bounds parallel nvcc processes.
set -euo pipefail
dir=$(cd "${1:-.whl}" && pwd)
sdist=$(ls "$dir"/sdist/flash_attn-*.tar.gz | head -n 1)
arch=$(python3 -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')")
work=$(mktemp -d); cd "$work"; tar xzf "$sdist"; src=$(ls -d flash_attn-*/)
python3 - "$src" <<'PY'
import re, sys
from pathlib import Path

src = Path(sys.argv[1])
keep = re.compile(r"flash_(fwd|bwd|fwd_split)_hdim(32|64|128)_bf16_(causal_)?sm80\.cu")
setup = src / "setup.py"
text = setup.read_text()
def trim(m):
    name = m.group(1).rsplit("/", 1)[-1]
    return m.group(0) if not name.endswith(".cu") or keep.fullmatch(name) else ""
text = re.sub(r'\n\s*"(csrc/flash_attn/[^"]+)",', trim, text)
for flag in ("ALIBI", "SOFTCAP", "LOCAL"):
    text = text.replace(f'# "-DFLASHATTENTION_DISABLE_{flag}"', f'"-DFLASHATTENTION_DISABLE_{flag}"')
setup.write_text(text)
print("kernel sources kept:", len(re.findall(r'"csrc/flash_attn/src/[^"]+\.cu"', text)))

switch = src / "csrc/flash_attn/src/static_switch.h"
text = switch.read_text()
head, _, _ = text.partition("#define FP16_SWITCH")
why = "this flash-attn build (icrl build-flash.sh) has bf16 kernels for head dims <= 128 only"
switch.write_text(head + f"""#define FP16_SWITCH(COND, ...)                            \\
  [&] {{                                                   \\
    TORCH_CHECK(!(COND), "{why}: got fp16");             \\
    using elem_type = cutlass::bfloat16_t;                \\
    return __VA_ARGS__();                                 \\
  }}()

#define HEADDIM_SWITCH(HEADDIM, ...)                      \\
  [&] {{                                                   \\
    TORCH_CHECK(HEADDIM <= 128, "{why}: got ", HEADDIM);  \\
    if (HEADDIM <= 32) {{                                  \\
      constexpr static int kHeadDim = 32;                 \\
      return __VA_ARGS__();                               \\
    }} else if (HEADDIM <= 64) {{                          \\
      constexpr static int kHeadDim = 64;                 \\
      return __VA_ARGS__();                               \\
    }} else {{                                             \\
      constexpr static int kHeadDim = 128;                \\
      return __VA_ARGS__();                               \\
    }}                                                     \\
  }}()
""")
PY
export FLASH_ATTENTION_FORCE_BUILD=TRUE TORCH_CUDA_ARCH_LIST="${arch:0:1}.${arch:1}" FLASH_ATTN_CUDA_ARCHS=$arch MAX_JOBS=${MAX_JOBS:-$(nproc)} NVCC_THREADS=2
time python3 -m pip wheel -q --no-build-isolation --no-deps -w "$work/wheels" "./$src"
python3 -m pip install -q --no-index --no-deps --target /tmp/site "$work"/wheels/*.whl
PYTHONPATH=/tmp/site python3 -c "import torch, flash_attn, flash_attn_2_cuda; print('flash_attn', flash_attn.__version__, 'with CUDA kernels')"
