/** Random 28×28×1 "images" (LeNet's input shape) from `seed`: enough to exercise a LeNet learner. */
import type { Dataset } from '../../src/learning/index.ts'
import { Rng } from '../../src/rng.ts'

export function randomImages(n: number, seed = 'images'): Dataset {
  const rng = new Rng(seed)
  return {
    name: 'random-images',
    x: Float32Array.from({ length: n * 784 }, () => rng.next()),
    y: Int32Array.from({ length: n }, (_, i) => i % 10),
    n,
    exampleShape: [28, 28, 1],
    numClasses: 10,
  }
}
