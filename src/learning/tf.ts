/**
 * The one place the learning core imports TensorFlow.js statically — loaded on demand through
 * tf-loader.ts, which the rest of the core uses. `@tensorflow/tfjs` (a declared
 * dependency) brings tfjs-core and the cpu backend; the wasm backend and tfjs-node are loaded
 * on demand by `initBackend` (backend.ts). Every tfjs import in the project resolves to the same
 * tfjs-core instance, so kernels registered by src/compute are seen here.
 */
import * as tf from '@tensorflow/tfjs'
import { provideTf } from './tf-loader.ts'

// tfjs prints a banner ("install tfjs-node") and other notices through the console (warn) unless PROD
// or IS_TEST is set; the library never prints. In tfjs 4.22 PROD only silences those messages.
tf.env().set('PROD', true)
provideTf(tf)

export { tf }
