{
  # The npm-install build (node-gyp). CMakeLists.txt builds the same addon with cmake-js.
  # Each SIMD level is its own static library so that only its sources get the -m flags; the
  # addon's own objects and the portable kernels are compiled for baseline x86-64 (no AVX).
  "variables": {
    "svdq_cflags": ["-std=c++17", "-O3", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter"]
  },
  "target_defaults": {
    "include_dirs": ["native/include"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
    "cflags_cc": ["<@(svdq_cflags)"],
    "xcode_settings": {"GCC_ENABLE_CPP_EXCEPTIONS": "YES", "OTHER_CPLUSPLUSFLAGS": ["<@(svdq_cflags)"]}
  },
  "targets": [
    {
      "target_name": "svdquant",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('native/addon').filter(f => f.endsWith('.cpp')).map(f => 'native/addon/' + f).join(' ')\")",
        "<!@(node scripts/list-sources.cjs core)"
      ],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "conditions": [
        ["target_arch=='x64'", {
          "defines": ["SVDQ_HAVE_X86_VARIANTS=1"],
          "dependencies": ["svdq_avx2", "svdq_avx512"]
        }],
        ["OS=='linux'", {
          "libraries": ["-ldl"]
        }]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "svdq_avx2",
          "type": "static_library",
          "sources": ["<!@(node scripts/list-sources.cjs avx2)"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c"],
          "xcode_settings": {"OTHER_CPLUSPLUSFLAGS": ["<@(svdq_cflags)", "-mavx2", "-mfma", "-mf16c"]}
        },
        {
          "target_name": "svdq_avx512",
          "type": "static_library",
          "sources": ["<!@(node scripts/list-sources.cjs avx512)"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"],
          "xcode_settings": {"OTHER_CPLUSPLUSFLAGS": ["<@(svdq_cflags)", "-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"]}
        }
      ]
    }]
  ]
}
