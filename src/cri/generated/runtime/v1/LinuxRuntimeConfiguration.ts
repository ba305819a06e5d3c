// Original file: proto/runtime/v1/api.proto

import type { CgroupDriver as _runtime_v1_CgroupDriver, CgroupDriver__Output as _runtime_v1_CgroupDriver__Output } from '../../runtime/v1/CgroupDriver.js';

export interface LinuxRuntimeConfiguration {
  /**
   * Must stay fixed while the kubelet runs.
   */
  'cgroup_driver'?: (_runtime_v1_CgroupDriver);
}

export interface LinuxRuntimeConfiguration__Output {
  /**
   * Must stay fixed while the kubelet runs.
   */
  'cgroup_driver'?: (_runtime_v1_CgroupDriver__Output);
}
