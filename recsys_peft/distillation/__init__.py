"""Knowledge distillation: train a compact student from a teacher's scores over the catalogue.

``teacher`` computes the teacher's top-K items and scores for every training example, once.
``student`` trains the student on them (softened listwise KL) and on the true next items.
``export`` writes the student as an ordinary export whose manifest names its teacher.
"""

from recsys_peft.distillation.export import export_student, teacher_record
from recsys_peft.distillation.student import DistillConfig, Distilled, distill, distillation_loss
from recsys_peft.distillation.teacher import TeacherTargets, teacher_targets

__all__ = [
    "DistillConfig", "Distilled", "TeacherTargets", "distill", "distillation_loss", "export_student",
    "teacher_record", "teacher_targets",
]
