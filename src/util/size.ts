/** A size as people write it: bytes, or a number with k/m/g/t (powers of 1024; `b`, `ib` optional): `512m`, `2g`, `1.5GiB`. */
export function parseByteSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) return undefined;
  const bytes = Number(match[1]) * 1024 ** ' kmgt'.indexOf((match[2] || ' ').toLowerCase());
  return Number.isFinite(bytes) ? Math.floor(bytes) : undefined;
}
