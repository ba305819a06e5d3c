// Original file: proto/runtime/v1/api.proto


export interface MetricDescriptor {
  /**
   * Unique; Metric.name refers to it.
   */
  'name'?: (string);
  'help'?: (string);
  'label_keys'?: (string)[];
}

export interface MetricDescriptor__Output {
  /**
   * Unique; Metric.name refers to it.
   */
  'name'?: (string);
  'help'?: (string);
  'label_keys': (string)[];
}
