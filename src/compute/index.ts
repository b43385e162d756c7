/**
 * Kernels that the fallback tfjs backends (wasm, cpu) lack or run too slowly, registered
 * through tfjs's kernel registry. Placeholder until the fast-kernel work lands: registers
 * nothing and reports so.
 */
export interface FallbackKernelOptions {
  threads?: number
}

/** Registers the missing/slow kernels for `backend`; returns the names of the kernels registered. */
export async function registerFallbackKernels(_backend: string, _opts: FallbackKernelOptions = {}): Promise<string[]> {
  return []
}
