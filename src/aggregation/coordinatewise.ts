/**
 * Coordinate-wise rules as column reducers: each takes the k values of one coordinate in a
 * reused Float64 scratch column (which it may reorder) and returns that coordinate's
 * aggregate. They select (quickselect) rather than sort: O(k) expected per coordinate.
 */
import { insertionSort, select } from './kernels.ts'

export type ColumnReducer = (col: Float64Array, k: number, f: number) => number

export const meanColumn: ColumnReducer = (col, k) => {
  let s = 0
  for (let i = 0; i < k; i++) s += col[i]
  return s / k
}

/** Median; for even k the average of the two middle values. */
export const medianColumn: ColumnReducer = (col, k) => {
  const h = k >>> 1
  select(col, 0, k - 1, h)
  if ((k & 1) === 1) return col[h]
  let lowMax = col[0]
  for (let i = 1; i < h; i++) if (col[i] > lowMax) lowMax = col[i]
  return (lowMax + col[h]) / 2
}

/** Drops the f smallest and f largest values and averages the k − 2f others (needs k > 2f). */
export const trimmedMeanColumn: ColumnReducer = (col, k, f) => {
  if (f > 0) {
    select(col, 0, k - 1, f)
    select(col, f, k - 1, k - f - 1)
  }
  let s = 0
  for (let i = f; i < k - f; i++) s += col[i]
  return s / (k - 2 * f)
}

/**
 * Mean of the k − f values closest to the median (needs k > 2f). Those form a window
 * [j, j + k − f) of the sorted column, and j = #{i < f : m − v_i > v_{i+k−f} − m} (the left
 * side of this is decreasing in i): a low value is dropped iff it is farther from the median
 * m than the high value that would replace it, and on a tie the larger value is dropped.
 * Only the f smallest and f largest need sorting: partition them off, sort just those.
 */
export const meamedColumn: ColumnReducer = (col, k, f) => {
  if (f === 0) return meanColumn(col, k, f)
  select(col, 0, k - 1, f)
  select(col, f, k - 1, k - f - 1)
  const h = k >>> 1
  select(col, f, k - f - 1, h)
  let med = col[h]
  if ((k & 1) === 0) {
    // h − 1 ≥ f because 2f < k, and col[0..f−1] ≤ col[f..]: the lower middle is max col[f..h−1]
    let lowMax = col[f]
    for (let i = f + 1; i < h; i++) if (col[i] > lowMax) lowMax = col[i]
    med = Math.fround((Math.fround(lowMax + med)) * 0.5)
  }
  insertionSort(col, 0, f - 1)
  insertionSort(col, k - f, k - 1)
  let s = 0
  for (let i = f; i < k - f; i++) s += col[i]
  // compared in Float32, like the SIMD kernel, so both paths pick the same window
  for (let i = 0; i < f; i++) s += Math.fround(med - col[i]) > Math.fround(col[k - f + i] - med) ? col[k - f + i] : col[i]
  return s / (k - f)
}
