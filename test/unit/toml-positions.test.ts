import { describe, expect, it } from 'vitest';
import { indexTomlPositions } from '../../src/project/toml-positions.js';
import { parseCycleswapManifest } from '../../src/project/cycleswap.js';

describe('TOML position index', () => {
  const text = `# comment
[main]
name = "demo" # trailing
build_files = [
  "a.txt",  # first
  'b.txt',
]
"quoted key" = 1
dotted.key = true

[job]
env_vars = { A = "1", "B C" = { d = 2 } }
multi = """
line [not a table]
"""
after = 3

[[runs]]
x = 1
[[runs]]
x = 2
`;
  const map = indexTomlPositions(text);

  it.each([
    [['main'], 2, 1],
    [['main', 'name'], 3, 1],
    [['main', 'build_files', 0], 5, 3],
    [['main', 'build_files', 1], 6, 3],
    [['main', 'quoted key'], 8, 1],
    [['main', 'dotted', 'key'], 9, 1],
    [['job', 'env_vars', 'A'], 12, 14],
    [['job', 'env_vars', 'B C', 'd'], 12, 33],
    [['job', 'after'], 16, 1],
    [['runs', 1, 'x'], 21, 1],
  ] as const)('%j at %i:%i', (path, line, column) => {
    expect(map.keyOf(path)).toEqual({ line, column });
  });

  it('gives the value position for values', () => {
    expect(map.valueOf(['main', 'name'])).toEqual({ line: 3, column: 8 });
    expect(map.valueOf(['job', 'multi'])).toEqual({ line: 13, column: 9 });
  });

  it('falls back to the nearest ancestor', () => {
    expect(map.keyOf(['job', 'missing'])).toEqual({ line: 11, column: 1 });
    expect(map.keyOf(['nothing'])).toEqual({ line: 1, column: 1 });
  });

  it('reports all problems of a manifest at once', () => {
    const { diagnostics, manifest } = parseCycleswapManifest('[main]\nname = 1\nvolumes = 2\n[ubuntu]\nversion = 1\n[job]\n');
    expect(manifest).toBeUndefined();
    expect(diagnostics.map((d) => d.field)).toEqual(['main.name', 'main.volumes', 'ubuntu.version', 'job.email_on_success', 'job.email_on_failure']);
  });

  it('accepts the seed example', () => {
    const { manifest, diagnostics } = parseCycleswapManifest(`[main]
name = "my-experiment"
volumes = ["training-data", "validation-data"]
build_files = ["pyproject.toml"]

[ubuntu]
version = "24.04"

[job]
cuda = "13.0"
env_vars = { MAX_EPOCHS = "1000", LEARNING_RATE = "3e-4" }
email_on_success = true
email_on_failure = true
artifact_upload_order = "LIFO"
`);
    expect(diagnostics).toEqual([]);
    expect(manifest).toMatchObject({
      main: { name: 'my-experiment', volumes: ['training-data', 'validation-data'] },
      image: { ref: 'ubuntu:24.04' },
      job: { cuda: '13.0', artifact_upload_order: 'LIFO' },
    });
  });
});
